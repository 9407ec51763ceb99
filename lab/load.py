"""HTTP load generation against a served model: workloads cut from the demo data, and a closed
loop of keep-alive clients (one connection each) speaking raw HTTP/1.1 with asyncio."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import numpy as np

from hflabels.paths import SENTIMENT_DATA

# ---- workloads ------------------------------------------------------------------------------------


def word_stream(seed: int) -> list[str]:
    """English words from the demo data, in a seeded order, to cut inputs of any length from."""
    sentences = []
    for name in ("train.csv", "test.csv"):
        lines = (SENTIMENT_DATA / name).read_text(encoding="utf-8").splitlines()[1:]
        sentences += [line.rsplit(",", 1)[0].strip('"') for line in lines]
    random.Random(seed).shuffle(sentences)
    return " ".join(sentences).split()


def mixed_inputs(words: list[str], count: int, seed: int, low: int = 5, high: int = 60) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        length = rng.randint(low, high)
        start = rng.randrange(0, len(words) - length)
        texts.append(" ".join(words[start : start + length]))
    return texts


def inputs_of_tokens(words: list[str], tokenizer: Any, tokens: int, count: int, seed: int) -> list[str]:
    """Texts of about ``tokens`` tokens each (special tokens included)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        start = rng.randrange(0, len(words) // 2)
        length = max(1, tokens // 2)
        while True:
            text = " ".join(words[start : start + length])
            have = len(tokenizer(text)["input_ids"])
            if have >= tokens or start + length >= len(words):
                break
            length += max(1, (tokens - have) // 2)
        ids = tokenizer(text, truncation=True, max_length=tokens)["input_ids"]
        texts.append(tokenizer.decode(ids, skip_special_tokens=True))
    return texts


# A request the server never answers (a lost job) counts as status 0 after this long, instead of
# holding its client forever.
ANSWER_TIMEOUT_S = 120.0


# ---- closed loop ----------------------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One HTTP/1.1 response: (status, whether the connection stays open); a few awaits, no parsing
    library. Bodies come with a Content-Length or chunked (TorchServe's streamed responses)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep_alive, chunked = 0, True, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value == "close":
            keep_alive = False
        elif name == "transfer-encoding" and value == "chunked":
            chunked = True
    if not chunked:
        await reader.readexactly(length)
        return status, keep_alive
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            # Trailers (none are sent) end with an empty line.
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return status, keep_alive
        await reader.readexactly(size + 2)


async def _closed_loop(
    url: str, token: str | None, bodies: Sequence[bytes], concurrency: int, duration: float
) -> dict[str, Any]:
    target = urlparse(url)
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.hostname}:{target.port}\r\n"
        f"Content-Type: application/json\r\n" + (f"Authorization: Bearer {token}\r\n" if token else "")
    ).encode()
    latencies: list[float] = []
    statuses: list[int] = []
    timeline: list[tuple[float, int]] = []
    counter = iter(range(10**9))
    deadline = time.perf_counter() + duration

    async def client() -> None:
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        while time.perf_counter() < deadline:
            body = bodies[next(counter) % len(bodies)]
            started = time.perf_counter()
            try:
                writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
                status, keep_alive = await asyncio.wait_for(_read_response(reader), ANSWER_TIMEOUT_S)
            except (ConnectionError, asyncio.IncompleteReadError, OSError, TimeoutError):
                status, keep_alive = 0, False  # 0: no HTTP answer at all (or none in ANSWER_TIMEOUT_S)
            finished = time.perf_counter()
            latencies.append(finished - started)
            statuses.append(status)
            timeline.append((finished, status))
            if not keep_alive:
                writer.close()
                reader, writer = await asyncio.open_connection(target.hostname, target.port)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    milliseconds = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "throughput": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p90_ms": float(np.percentile(milliseconds, 90)),
        "p99_ms": float(np.percentile(milliseconds, 99)),
        "errors": sum(1 for status in statuses if status != 200),
        # Raw material for callers that aggregate runs (soak.py); not written to results.
        "latencies_ms": milliseconds,
        "timeline": timeline,
    }


# ---- open loop ------------------------------------------------------------------------------------


async def _open_loop(
    url: str, token: str | None, bodies: Sequence[bytes], rate: float, duration: float, seed: int
) -> dict[str, Any]:
    """Poisson arrivals at ``rate`` per second for ``duration`` seconds, each on an idle kept-alive
    connection (a new one when none is idle). A latency counts from the scheduled arrival, so a
    client that falls behind does not hide the server's queue (no coordinated omission)."""
    target = urlparse(url)
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.hostname}:{target.port}\r\n"
        f"Content-Type: application/json\r\n" + (f"Authorization: Bearer {token}\r\n" if token else "")
    ).encode()
    rng = np.random.default_rng(seed)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    statuses: list[int] = []

    async def one(body: bytes, scheduled: float) -> None:
        connection = idle.pop() if idle else await asyncio.open_connection(target.hostname, target.port)
        reader, writer = connection
        try:
            writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            status, keep_alive = await asyncio.wait_for(_read_response(reader), ANSWER_TIMEOUT_S)
        except (ConnectionError, asyncio.IncompleteReadError, OSError, TimeoutError):
            status, keep_alive = 0, False
        latencies.append(time.perf_counter() - scheduled)
        statuses.append(status)
        if keep_alive:
            idle.append(connection)
        else:
            writer.close()

    started = time.perf_counter()
    arrival, tasks, sent = started, [], 0
    while arrival < started + duration:
        arrival += rng.exponential(1.0 / rate)
        delay = arrival - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(bodies[sent % len(bodies)], arrival)))
        sent += 1
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for _, writer in idle:
        writer.close()
    milliseconds = np.array(latencies) * 1000
    return {
        "offered_rate": rate,
        "requests": len(latencies),
        "throughput": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p90_ms": float(np.percentile(milliseconds, 90)),
        "p99_ms": float(np.percentile(milliseconds, 99)),
        "errors": sum(1 for status in statuses if status != 200),
    }


def open_run(
    url: str, token: str | None, texts: Sequence[str], rate: float, duration: float, seed: int
) -> dict[str, Any]:
    bodies = [json.dumps({"inputs": text}).encode() for text in texts]
    return asyncio.run(_open_loop(url, token, bodies, rate, duration, seed))


def served_run(url: str, token: str | None, texts: Sequence[str], concurrency: int, duration: float) -> dict[str, Any]:
    return bodies_run(url, token, [json.dumps({"inputs": text}).encode() for text in texts], concurrency, duration)


def bodies_run(
    url: str, token: str | None, bodies: Sequence[bytes], concurrency: int, duration: float
) -> dict[str, Any]:
    """The closed loop over JSON request ``bodies``, taken in order and round again."""
    return asyncio.run(_closed_loop(url, token, bodies, concurrency, duration))


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {key: statistics.median(run[key] for run in runs) for key in ("throughput", "p50_ms", "p90_ms", "p99_ms")}
    summary["errors"] = sum(run["errors"] for run in runs)
    summary["requests"] = sum(run["requests"] for run in runs)
    summary["rounds"] = [round(run["throughput"], 1) for run in runs]
    return summary
