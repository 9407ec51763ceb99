"""Text generation with a causal LM, answered like transformers' text-generation pipeline:
``[{"generated_text": ...}]`` per prompt, greedy unless sampling is asked for.

Prompts of one TorchServe batch that share generation parameters run together, sorted by
length and left-padded (a causal LM continues from the right end of every row).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from handler.api.errors import ConfigurationError, RequestError
from handler.api.parameters import ParamSpec
from handler.api.request_parsing import RequestBody, parse_inputs, parse_text
from handler.api.settings import HandlerSettings
from handler.api.tasks import Task
from handler.api.types import BatchResult, ForwardStats, ParsedRequest, RequestOutcome
from handler.engine.batching import attention_mask, pad_rows
from handler.engine.model_loading import LoadedModel
from handler.engine.runner import TaskRunner

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 32


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    seed: int | None
    return_full_text: bool
    stop: tuple[str, ...]

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "num_beams": 1,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        return kwargs


class TextGenerationRunner(TaskRunner[str, GenerationParams]):
    task = Task.TEXT_GENERATION
    auto_model_class = AutoModelForCausalLM

    def __init__(self, loaded: LoadedModel, settings: HandlerSettings, labels: tuple[str, ...] | None) -> None:
        context = getattr(loaded.config, "max_position_embeddings", None)
        self.context_length = context if isinstance(context, int) and context > 1 else settings.max_length
        self.max_new_tokens_cap = min(settings.max_new_tokens_limit, self.context_length - 1)
        super().__init__(loaded, settings, labels)
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
            "repetition_penalty": ParamSpec("float", default=1.0, minimum=0.0, exclusive_minimum=True, maximum=100.0),
            "seed": ParamSpec("int", default=None, minimum=0, maximum=2**63 - 1, nullable=True),
            "return_full_text": ParamSpec("bool", default=True),
            "stop": ParamSpec("str_list", default=(), max_items=16, max_item_length=128, accepts_single_string=True),
        }

    def parse(self, body: RequestBody) -> ParsedRequest[str, GenerationParams]:
        inputs, is_list = parse_inputs(body.inputs, parse_text, self.settings.max_inputs_per_request)
        params = self.parameters_for(body)
        if any(not text for text in params["stop"]):
            raise RequestError("parameters.stop: stop strings must not be empty", reason="invalid_parameter")
        return ParsedRequest(inputs, is_list, GenerationParams(**{**params, "stop": tuple(params["stop"])}))

    def run(self, requests: Sequence[ParsedRequest[str, GenerationParams]]) -> BatchResult:
        texts: list[list[Any]] = [[None] * len(request.inputs) for request in requests]
        truncated = [0] * len(requests)
        stats = ForwardStats()
        for params, members in self._groups(requests):
            prompts = [(r, k) for r in members for k in range(len(requests[r].inputs))]
            encoded = self.tokenizer([requests[r].inputs[k] for r, k in prompts])["input_ids"]
            budget = self.context_length - params.max_new_tokens
            for (r, _), ids in zip(prompts, encoded):
                truncated[r] += int(len(ids) > budget)
            # Too long a prompt keeps its end: the text the model must continue.
            encoded = [ids[-budget:] for ids in encoded]
            lengths = [len(ids) for ids in encoded]
            plan = self.plan_padded_passes(lengths)
            for batch in plan:
                generated = self._generate([encoded[i] for i in batch], params, stats)
                for i, new_text in zip(batch, generated):
                    r, k = prompts[i]
                    prompt = requests[r].inputs[k]
                    texts[r][k] = [{"generated_text": prompt + new_text if params.return_full_text else new_text}]
        outcomes = [
            RequestOutcome(payload=texts[r] if request.is_list else texts[r][0], truncated_inputs=truncated[r])
            for r, request in enumerate(requests)
        ]
        return BatchResult(outcomes, stats)

    @staticmethod
    def _groups(requests: Sequence[ParsedRequest[str, GenerationParams]]) -> list[tuple[GenerationParams, list[int]]]:
        """Requests that can share a generate() call; a seeded sampling request runs alone."""
        shared: dict[GenerationParams, list[int]] = {}
        alone: list[tuple[GenerationParams, list[int]]] = []
        for r, request in enumerate(requests):
            if request.params.do_sample and request.params.seed is not None:
                alone.append((request.params, [r]))
            else:
                shared.setdefault(request.params, []).append(r)
        return list(shared.items()) + alone

    def _generate(self, prompts: Sequence[list[int]], params: GenerationParams, stats: ForwardStats) -> list[str]:
        lengths = [len(ids) for ids in prompts]
        input_ids = pad_rows(prompts, self.pad_id, side="left")
        width = input_ids.shape[1]
        mask = attention_mask(lengths, width, side="left")
        stats.add_pass(lengths, padded=True)
        kwargs = params.generate_kwargs()
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if params.do_sample and params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=torch.from_numpy(input_ids).to(self.device),
                attention_mask=torch.from_numpy(mask).to(self.device),
                pad_token_id=self.pad_id,
                **kwargs,
            )
        new_tokens = output[:, width:].cpu().tolist()
        return [self.tokenizer.decode(tokens, skip_special_tokens=True) for tokens in new_tokens]
