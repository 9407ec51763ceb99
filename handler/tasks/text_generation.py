"""Text generation with a causal LM, answered like transformers' text-generation pipeline:
``[{"generated_text": ...}]`` per prompt, greedy unless sampling is asked for.

Prompts of one TorchServe batch that share generation parameters run together, sorted by
length and left-padded (a causal LM continues from the right end of every row). A request with
``"stream": true`` runs alone and sends each token as it comes, as text-generation-inference's
server-sent events; ``details`` adds TGI's per-token details to a plain answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList
from transformers.generation.streamers import BaseStreamer

from handler.api.errors import ConfigurationError, RequestError
from handler.api.parameters import ParamSpec
from handler.api.request_parsing import RequestBody, parse_inputs, parse_text
from handler.api.streaming import StreamSink, token_event
from handler.api.tasks import Task
from handler.api.types import BatchResult, ForwardStats, ParsedRequest, RequestOutcome
from handler.engine.batching import attention_mask, pad_rows
from handler.engine.runner import RunnerSetup, TaskRunner

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 32
# Parameters of text-generation-inference that InferenceClient may send and that this handler
# cannot honour: refused with a 400 naming them, unless they ask for nothing (false or 1).
_UNSUPPORTED_UNLESS_OFF = {"best_of": 1, "decoder_input_details": False, "watermark": False}


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_k: int
    top_p: float
    typical_p: float
    repetition_penalty: float
    seed: int | None
    return_full_text: bool
    stop: tuple[str, ...]
    # TGI's: keep only the last ``truncate`` prompt tokens.
    truncate: int | None
    # TGI's: answer {"generated_text", "details"} with finish reason and per-token log-probabilities.
    details: bool
    stream: bool

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "num_beams": 1,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, typical_p=self.typical_p)
        return kwargs

    @property
    def needs_tokens(self) -> bool:
        return self.details or self.stream


@dataclass
class Generated:
    """One prompt's continuation: its text, and per token what details and streams report."""

    text: str
    # The prompt it continues (answers may repeat it: return_full_text).
    prompt: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "length"


class _LogprobRecorder(LogitsProcessor):
    """Keeps each step's log-probabilities (of the scores as processed so far), for details."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.steps.append(torch.log_softmax(scores.float(), dim=-1))
        return scores


class _TokenStreamer(BaseStreamer):
    """Calls ``on_token(id, step)`` for each generated token of a one-prompt generate()."""

    def __init__(self, on_token: Any) -> None:
        self.on_token = on_token
        self.step = -1  # the first put() is the prompt

    def put(self, value: torch.Tensor) -> None:
        if self.step >= 0:
            for token in value.reshape(-1).tolist():
                self.on_token(int(token), self.step)
        self.step += 1

    def end(self) -> None:
        pass


class TextGenerationRunner(TaskRunner[str, GenerationParams]):
    task = Task.TEXT_GENERATION
    auto_model_class = AutoModelForCausalLM

    def __init__(self, setup: RunnerSetup) -> None:
        # schema() needs these, and the base class reads the schema.
        context = getattr(setup.loaded.config, "max_position_embeddings", None)
        self.context_length = context if isinstance(context, int) and context > 1 else setup.settings.limits.max_length
        self.max_new_tokens_cap = min(setup.settings.generation.max_new_tokens_limit, self.context_length - 1)
        super().__init__(setup)
        tokenizer = self.tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad_id is None:
            raise ConfigurationError("the tokenizer has neither a pad nor an EOS token to pad prompts with")
        self.pad_id = pad_id
        self.eos_id = tokenizer.eos_token_id

    def schema(self) -> Mapping[str, ParamSpec]:
        cap = self.max_new_tokens_cap
        return {
            "max_new_tokens": ParamSpec("int", default=min(DEFAULT_MAX_NEW_TOKENS, cap), minimum=1, maximum=cap),
            "do_sample": ParamSpec("bool", default=False),
            "temperature": ParamSpec("float", default=1.0, minimum=0.0, exclusive_minimum=True, maximum=100.0),
            "top_k": ParamSpec("int", default=50, minimum=0, maximum=1_000_000),
            "top_p": ParamSpec("float", default=1.0, minimum=0.0, exclusive_minimum=True, maximum=1.0),
            "typical_p": ParamSpec("float", default=1.0, minimum=0.0, exclusive_minimum=True, maximum=1.0),
            "repetition_penalty": ParamSpec("float", default=1.0, minimum=0.0, exclusive_minimum=True, maximum=100.0),
            "seed": ParamSpec("int", default=None, minimum=0, maximum=2**63 - 1, nullable=True),
            "return_full_text": ParamSpec("bool", default=True),
            "stop": ParamSpec("str_list", default=(), max_items=16, max_item_length=128, accepts_single_string=True),
            "truncate": ParamSpec("int", default=None, minimum=1, maximum=self.context_length, nullable=True),
            "details": ParamSpec("bool", default=False),
            "best_of": ParamSpec("int", minimum=1),
            "decoder_input_details": ParamSpec("bool"),
            "watermark": ParamSpec("bool"),
        }

    def cacheable(self, request: ParsedRequest[str, GenerationParams]) -> bool:
        # Sampling is asked for to get a fresh continuation (a seed fixes one only on one device).
        return not request.params.stream and not request.params.do_sample

    def parse(self, body: RequestBody) -> ParsedRequest[str, GenerationParams]:
        inputs, is_list = parse_inputs(body.inputs, parse_text, self.settings.limits.max_inputs_per_request)
        params = self.parameters_for(body)
        if any(not text for text in params["stop"]):
            raise RequestError("parameters.stop: stop strings must not be empty", reason="invalid_parameter")
        for name, off in _UNSUPPORTED_UNLESS_OFF.items():
            if params.pop(name, off) != off:
                raise RequestError(
                    f"parameters.{name}={params.get(name, '') or 'on'} is not supported by this server "
                    f"(only {str(off).lower()})",
                    reason="invalid_parameter",
                )
        if body.stream and is_list:
            raise RequestError("stream: true takes one prompt, not a list", reason="wrong_shape")
        generation = GenerationParams(**{**params, "stop": tuple(params["stop"]), "stream": body.stream})
        return ParsedRequest(inputs, is_list, generation)

    def run(
        self,
        requests: Sequence[ParsedRequest[str, GenerationParams]],
        sinks: Sequence[StreamSink | None] | None = None,
    ) -> BatchResult:
        generated: list[list[Any]] = [[None] * len(request.inputs) for request in requests]
        tails: dict[int, str] = {}
        truncated = [0] * len(requests)
        stats = ForwardStats()
        for params, members in self._groups(requests):
            prompts = [(r, k) for r in members for k in range(len(requests[r].inputs))]
            encoded = self.tokenizer([requests[r].inputs[k] for r, k in prompts])["input_ids"]
            budget = self.context_length - params.max_new_tokens
            if params.truncate is not None:
                budget = min(budget, params.truncate)
            for (r, _), ids in zip(prompts, encoded):
                truncated[r] += int(len(ids) > budget)
            # Too long a prompt keeps its end: the text the model must continue.
            encoded = [ids[-budget:] for ids in encoded]
            if params.stream:
                [(r, k)] = prompts
                sink = sinks[r] if sinks is not None else None
                tails[r] = self._stream(requests[r].inputs[k], encoded[0], params, stats, sink)
                continue
            lengths = [len(ids) for ids in encoded]
            for batch in self.plan_padded_passes(lengths):
                results = self._generate([encoded[i] for i in batch], params, stats)
                for i, result in zip(batch, results):
                    r, k = prompts[i]
                    result.prompt = requests[r].inputs[k]
                    generated[r][k] = result
        outcomes = []
        for r, request in enumerate(requests):
            if r in tails:
                outcomes.append(RequestOutcome(stream_tail=tails[r], truncated_inputs=truncated[r]))
            else:
                render = partial(self.render, params=request.params)
                outcomes.append(RequestOutcome.answered(request, generated[r], render, truncated_inputs=truncated[r]))
        return BatchResult(outcomes, stats)

    def render(self, result: Generated, params: GenerationParams) -> list[dict[str, Any]]:
        """The pipeline's answer for one prompt: a one-item list of {"generated_text"[, "details"]}."""
        text = result.prompt + result.text if params.return_full_text else result.text
        answer: dict[str, Any] = {"generated_text": text}
        if params.details:
            answer["details"] = {
                "finish_reason": result.finish_reason,
                "generated_tokens": len(result.token_ids),
                "seed": params.seed,
                "prefill": [],
                "tokens": [self._token(token, logprob) for token, logprob in zip(result.token_ids, result.logprobs)],
            }
        return [answer]

    def _token(self, token: int, logprob: float, text: str | None = None) -> dict[str, Any]:
        special = token in self.tokenizer.all_special_ids
        if text is None:
            text = self.tokenizer.decode([token], skip_special_tokens=False)
        return {"id": token, "text": text, "logprob": logprob, "special": special}

    @staticmethod
    def _groups(requests: Sequence[ParsedRequest[str, GenerationParams]]) -> list[tuple[GenerationParams, list[int]]]:
        """Requests that can share a generate() call; a streamed or seeded sampling request runs alone."""
        shared: dict[GenerationParams, list[int]] = {}
        alone: list[tuple[GenerationParams, list[int]]] = []
        for r, request in enumerate(requests):
            if request.params.stream or (request.params.do_sample and request.params.seed is not None):
                alone.append((request.params, [r]))
            else:
                shared.setdefault(request.params, []).append(r)
        return list(shared.items()) + alone

    def _generate_call(
        self,
        prompts: Sequence[list[int]],
        params: GenerationParams,
        stats: ForwardStats,
        recorder: _LogprobRecorder | None = None,
        streamer: BaseStreamer | None = None,
    ) -> tuple[list[list[int]], int]:
        """The new token ids of each prompt (padding after the end included) and the prompt width."""
        lengths = [len(ids) for ids in prompts]
        input_ids = pad_rows(prompts, self.pad_id, side="left")
        width = input_ids.shape[1]
        mask = attention_mask(lengths, width, side="left")
        stats.add_pass(lengths, padded=True)
        kwargs = params.generate_kwargs()
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if recorder is not None:
            kwargs["logits_processor"] = LogitsProcessorList([recorder])
        if streamer is not None:
            kwargs["streamer"] = streamer
        if params.do_sample and params.seed is not None:
            torch.manual_seed(params.seed)
        policy = self.policy
        with policy.forward_context():
            output = self.model.generate(
                input_ids=policy.tensor(input_ids),
                attention_mask=policy.tensor(mask),
                pad_token_id=self.pad_id,
                **kwargs,
            )
        return output[:, width:].cpu().tolist(), width

    def _generate(self, prompts: Sequence[list[int]], params: GenerationParams, stats: ForwardStats) -> list[Generated]:
        recorder = _LogprobRecorder() if params.needs_tokens else None
        new_tokens, _ = self._generate_call(prompts, params, stats, recorder)
        results = []
        for row, tokens in enumerate(new_tokens):
            result = Generated(self.tokenizer.decode(tokens, skip_special_tokens=True))
            if recorder is not None:
                result.token_ids = self._until_end(tokens)
                result.logprobs = [
                    float(recorder.steps[step][row, token]) for step, token in enumerate(result.token_ids)
                ]
                result.finish_reason = self._finish_reason(result.token_ids, params)
            results.append(result)
        return results

    def _until_end(self, tokens: list[int]) -> list[int]:
        """Generated tokens through the first end-of-sequence; what follows is padding."""
        if self.eos_id is not None and self.eos_id in tokens:
            return tokens[: tokens.index(self.eos_id) + 1]
        return tokens

    def _finish_reason(self, tokens: list[int], params: GenerationParams) -> str:
        if tokens and self.eos_id is not None and tokens[-1] == self.eos_id:
            return "eos_token"
        return "length" if len(tokens) >= params.max_new_tokens else "stop_sequence"

    def _stream(
        self, prompt: str, ids: list[int], params: GenerationParams, stats: ForwardStats, sink: StreamSink | None
    ) -> str:
        """Generate for one prompt, sending each token's event to ``sink`` as it comes; returns the
        last event (with the whole text and the details), and every event when there is no sink.

        A token's text is what it adds to the decoded text so far (nothing while it ends inside a
        multi-byte character, and nothing for special tokens), so the events' texts add up to the
        answer's generated text."""
        recorder = _LogprobRecorder()
        tokens: list[int] = []
        emitted: list[str] = []  # the texts sent so far, and the held-back last event
        pending: list[dict[str, Any]] = []
        unsent: list[str] = []

        def on_token(token: int, step: int) -> None:
            tokens.append(token)
            decoded = self.tokenizer.decode(tokens, skip_special_tokens=True)
            so_far = "".join(emitted)
            piece = "" if decoded.endswith("\ufffd") or not decoded.startswith(so_far) else decoded[len(so_far) :]
            emitted.append(piece)
            logprob = float(recorder.steps[step][0, token]) if step < len(recorder.steps) else 0.0
            # The latest token is held back: the last one goes out with the whole text.
            if pending:
                event = token_event(len(tokens) - 1, pending.pop())
                if sink is not None:
                    sink(event)
                else:
                    unsent.append(event)
            pending.append(self._token(token, logprob, piece))

        self._generate_call([ids], params, stats, recorder, _TokenStreamer(on_token))
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        last = pending.pop() if pending else self._token(self.eos_id or 0, 0.0, "")
        # Whatever the pieces could not say yet (a character completed at the end) goes in the last.
        last["text"] += text[len("".join(emitted)) :] if text.startswith("".join(emitted)) else ""
        details = {
            "finish_reason": self._finish_reason(self._until_end(tokens), params),
            "generated_tokens": len(tokens),
            "input_length": len(ids),
            "seed": params.seed,
        }
        generated_text = prompt + text if params.return_full_text else text
        return "".join(unsent) + token_event(len(tokens), last, generated_text, details)
