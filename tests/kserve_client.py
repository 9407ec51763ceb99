"""Calls a KServe endpoint with KServe's own Python SDK (``kserve.InferenceRESTClient``).

The SDK brings its own web stack (fastapi, grpcio, protobuf, ...), so it lives in a venv of its own
(``make kserve-client`` builds ``.venv-kserve-client``), never in the project's:

    .venv-kserve-client/bin/python tests/kserve_client.py BASE_URL MODEL v1|v2 TEXTS.json ANSWERS.json

ANSWERS.json: one answer per text, as the SDK returned it (v1: the ``predictions``; v2: each BYTES
output's data, a JSON text, decoded).
"""

from __future__ import annotations

import asyncio
import json
import sys


async def infer(base_url: str, model: str, protocol: str, texts: list) -> list:
    import numpy

    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    client = InferenceRESTClient(RESTConfig(protocol=protocol, retries=1, timeout=60))
    if protocol == "v1":
        response = await client.infer(base_url, {"instances": texts}, model_name=model)
        return response["predictions"]
    inputs = []
    for i, text in enumerate(texts):
        tensor = InferInput(name=f"text-{i}", shape=[1], datatype="BYTES")
        # TorchServe 0.12's kservev2 envelope reads JSON only: the SDK's default binary-tensor
        # extension fails there, before any handler runs.
        tensor.set_data_from_numpy(numpy.array([text], dtype=object), binary_data=False)
        inputs.append(tensor)
    response = await client.infer(base_url, InferRequest(model_name=model, infer_inputs=inputs), model_name=model)
    return [json.loads(output.data[0]) for output in response.outputs]


def main(base_url: str, model: str, protocol: str, texts_path: str, answers_path: str) -> int:
    with open(texts_path, encoding="utf-8") as texts_file:
        texts = json.load(texts_file)
    answers = asyncio.run(infer(base_url, model, protocol, texts))
    with open(answers_path, "w", encoding="utf-8") as answers_file:
        json.dump(answers, answers_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
