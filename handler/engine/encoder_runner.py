"""The encoder machinery shared by classification, token classification, zero-shot and QA.

Every input of every request becomes one or more windows of token ids; the windows of the whole
TorchServe batch are sorted by length into micro-batches (or padding-free passes, for models that
can run packed), run inside the execution policy's context, cut back to their real length, and
handed to the task's pure post-processing, which gives one typed result per input; the task's
renderer turns each into its answer.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch

from handler.api.errors import RequestError
from handler.api.settings import Backend, Precision, Quantization
from handler.api.streaming import StreamSink
from handler.api.types import BatchResult, ForwardStats, InputT, ParamsT, ParsedRequest, RequestOutcome
from handler.engine import linear_kernels
from handler.engine.batching import attention_mask, pad_rows, plan_packed_passes, unpad_row
from handler.engine.execution import ExecutionPolicy, fast_low_precision, measure_execution, pass_timer
from handler.engine.linear_kernels import float32_linear_kernels
from handler.engine.live_tuning import PRECISION, STRATEGY, LiveExecutionTuner, Switch, Way
from handler.engine.packed_encoder import PackedEncoder, packing_unsupported
from handler.engine.pass_costs import ExecutionChoice
from handler.engine.precision import BUILT_IN_PROBE, PrecisionChoice, choose_precision, compare_outputs
from handler.engine.runner import RunnerSetup, TaskRunner
from handler.engine.weight_copies import WeightCopies, own_linear_layers

logger = logging.getLogger(__name__)
# A pass whose real tokens fill at least this share of its padded shape runs padded: packing
# would remove almost nothing and adds its own bookkeeping (docs: performance).
PACKING_MIN_FILL = 0.95
DetailT = TypeVar("DetailT")


@dataclass
class Window(Generic[DetailT]):
    """One model input row: token ids, and what the task needs to read its output back."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    detail: DetailT


@dataclass
class EncodedInput(Generic[DetailT]):
    windows: list[Window[DetailT]]
    truncated: bool = False
    # Whether the answer reports how many windows were read (a document read whole).
    reports_windows: bool = False


EncodeResult = EncodedInput[Any] | RequestError


@contextmanager
def last_hidden_states(model: Any, wanted: bool) -> Iterator[list[torch.Tensor]]:
    """A list that holds the encoder's last hidden states (batch, tokens, hidden) once the model
    has run, caught by a hook on its base model (its first output); empty when not ``wanted``."""
    caught: list[torch.Tensor] = []
    base = getattr(model, "base_model", model)
    if not wanted or base is model:
        yield caught
        return
    handle = base.register_forward_hook(lambda module, args, output: caught.append(output[0]))
    try:
        yield caught
    finally:
        handle.remove()


def encoder_inputs(tokenizer: Any) -> tuple[str, ...]:
    """What a padded pass feeds the model: token ids, token types where the tokenizer makes
    them, and the attention mask."""
    types = ("token_type_ids",) if "token_type_ids" in tokenizer.model_input_names else ()
    return ("input_ids", *types, "attention_mask")


def was_truncated(encoding: Any, row: int, max_length: int) -> bool:
    """Whether the tokenizer cut row ``row``; fast tokenizers record what they cut off."""
    if encoding.encodings is not None:
        return bool(encoding.encodings[row].overflowing)
    return len(encoding["input_ids"][row]) >= max_length


def token_types_of(encoding: Any, row: int) -> list[int] | None:
    type_ids = encoding.get("token_type_ids")
    return type_ids[row] if type_ids is not None else None


def windows_of_inputs(overflow_to_sample: Sequence[int], inputs: int, limit: int) -> list[tuple[list[int], bool]]:
    """Per input, the encoding rows of its first ``limit`` windows and whether any were cut off."""
    rows: list[list[int]] = [[] for _ in range(inputs)]
    for row, owner in enumerate(overflow_to_sample):
        rows[owner].append(row)
    return [(owned[:limit], len(owned) > limit) for owned in rows]


class EncoderRunner(TaskRunner[InputT, ParamsT], Generic[InputT, ParamsT, DetailT]):
    """Tasks answered by one forward pass of an encoder per window."""

    # Model output fields to keep, and whether they have a token axis to cut back.
    output_fields: ClassVar[tuple[str, ...]] = ("logits",)
    token_level_outputs: ClassVar[bool] = False

    def __init__(self, setup: RunnerSetup) -> None:
        super().__init__(setup)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.padding_side = "left" if self.tokenizer.padding_side == "left" else "right"
        self.feeds_token_types = "token_type_ids" in encoder_inputs(self.tokenizer)
        # Padding-free passes, when the model allows them and they pay here (prepare_execution).
        self.packed: PackedEncoder | None = None
        self.packer: PackedEncoder | None = None
        # With packed_forward auto, or dtype auto where bf16 agreed with float32: corrects the
        # load-time choices from live passes (live_tuning.py).
        self.tuner: LiveExecutionTuner | None = None
        # dtype auto: what was chosen and why (None: the dtype was configured).
        self.precision: PrecisionChoice | None = None
        # dtype auto: the autocast dtype whose answers were verified at load (None: none was).
        self.verified_autocast: torch.dtype | None = None

    def prepare_execution(self) -> None:
        packer = self._packer()
        self.packed = self.packer = packer
        # Timed one worker of the machine at a time, or read back (load_measurements.py).
        with self.measurements as measurements:
            # Before the passes are timed: they run on whichever kernel serves.
            kernels, kernel_choice = float32_linear_kernels(
                self._linear_layers, self.settings, self.policy.device,
                measure=lambda linears: measurements.remember(
                    "float32_linear", lambda: linear_kernels.measure_speedup(linears, measurements.checkpoint),
                    list, tuple),
            )  # fmt: skip
            logger.info("%s", kernel_choice.describe())
            self.policy = self.measured_passes(replace(self.policy, float32_linears=kernels))
            self.packed = packer if self.policy.packed else None
            if self.settings.loading.dtype is Precision.AUTO:
                self._choose_precision()
        logger.info("%s", measurements.describe())
        tunable = [STRATEGY] if packer is not None and self.settings.batching.packed_forward is None else []
        tunable += [PRECISION] if self.verified_autocast is not None else []
        if tunable:
            self.tuner = LiveExecutionTuner(self.way, tunable)

    def measured_passes(self, policy: ExecutionPolicy) -> ExecutionPolicy:
        """``policy`` with packed or padded passes and batch_overhead_tokens as timed under it."""
        sample_ids = np.random.default_rng(0).integers(5, max(6, self.tokenizer.vocab_size), self.max_length)
        checkpoint = self.measurements.checkpoint

        def sample_windows(lengths: Sequence[int]) -> list[Window]:
            types = self.feeds_token_types
            return [Window(sample_ids[:n].tolist(), [0] * n if types else None, None) for n in lengths]

        return measure_execution(
            policy,
            self.settings,
            pass_timer(lambda lengths: self._run_padded(sample_windows(lengths), lengths, policy), checkpoint),
            pass_timer(lambda lengths: self._run_packed(sample_windows(lengths), lengths, policy), checkpoint)
            if self.packer
            else None,
            self.max_length,
            remember=lambda measure: self.measurements.remember(
                f"passes/{policy.autocast_dtype or 'float32'}/{'onednn' if policy.float32_linears else 'torch'}",
                measure, ExecutionChoice.to_json, ExecutionChoice.from_json, lambda choice: not choice.disturbed),
        )  # fmt: skip

    @property
    def way(self) -> Way:
        """How passes run now: packed or padded, low-precision autocast or not."""
        return Way(self.policy.packed, self.policy.autocast_dtype is not None)

    def policy_for(self, way: Way) -> ExecutionPolicy:
        autocast = self.verified_autocast if way.low_precision else None
        return replace(self.policy, packed=way.packed, autocast_dtype=autocast)

    def _choose_precision(self) -> None:
        """dtype auto: bf16 autocast if it is fast here and agrees with float32 on the probe."""
        loading = self.settings.loading
        texts = list(self.probe or BUILT_IN_PROBE)
        if loading.quantization is not Quantization.NONE:
            # An int8 model is its own choice of speed: nothing to add.
            self.precision = PrecisionChoice(False, None, len(texts), why_not="quantization is set")
            logger.info("%s", self.precision.describe())
            return
        unit = fast_low_precision(self.policy.device)
        autocast = torch.bfloat16 if self.policy.device.type == "cpu" else torch.float16
        copies = None
        if unit is not None and not loading.torch_compile and loading.backend is Backend.TORCH:
            # Compiled graphs fold the cast into their constants; OpenVINO compiles its own.
            copies = WeightCopies(self._linear_layers(), autocast)
        float32 = replace(self.policy, weight_copies=copies)
        low = replace(float32, autocast_dtype=autocast)
        encoding = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        windows = [Window(ids, token_types_of(encoding, row), None) for row, ids in enumerate(encoding["input_ids"])]

        def run(low_precision: bool, count: int | None) -> list[dict[str, np.ndarray]]:
            if count is not None:  # a timing round (all texts: the answers)
                self.measurements.checkpoint()
            policy = low if low_precision else float32
            return self._forward_with(windows[:count], policy.packed and self.packer is not None, policy=policy)

        def answers() -> tuple[bool, float]:
            return self.compare_probe_outputs(run(False, None), run(True, None))

        try:
            # The answers first: a candidate that disagrees is not worth timing.
            found = self.measurements.recall(f"answers/{autocast}", answers, list, tuple) if unit is not None else None
            agreed = found is not None and found[0] and found[1] <= loading.dtype_tolerance
            if agreed and self.packer is not None and self.settings.batching.packed_forward is None:
                # Each precision at its own faster strategy: with oneDNN's float32 kernel padded
                # passes won in float32 where packed ones won in bf16 (AMD EPYC Zen 5), and timing
                # both at float32's choice understated bf16 (1.06x against 1.5x served).
                low = self.measured_passes(low)
            choice = choose_precision(unit, len(texts), run, loading.dtype_tolerance, answers=found,
                                      remember=lambda timed: self.measurements.remember(
                                          f"precision/{autocast}", timed, list, tuple,
                                          lambda timing: not timing[2]))  # fmt: skip
        except RuntimeError as error:
            # Fail-closed: a model whose layers refuse autocast serves float32.
            choice = PrecisionChoice(False, None, len(texts), why_not=f"low precision failed on the probe: {error}")
        logger.info("%s%s", choice.describe(), "" if self.probe else " (the built-in probe: no probe.txt)")
        self.precision = choice
        # Answers checked: whichever is faster may serve (the speed test alone can be fooled).
        self.verified_autocast = low.autocast_dtype if choice.answers_agree else None
        if copies is not None and self.verified_autocast is None:
            copies.use(False)  # bf16 will never run: the copies go
            float32 = low = replace(float32, weight_copies=None)
        self.policy = low if choice.low_precision else float32
        self.packed = self.packer if self.policy.packed else None

    def _linear_layers(self) -> list[torch.nn.Linear]:
        """The linear layers a forward can run: the model's own and the packed encoder's."""
        return own_linear_layers(self.model) + (self.packer.own_linear_layers() if self.packer else [])

    def compare_probe_outputs(
        self, reference: Sequence[dict[str, np.ndarray]], candidate: Sequence[dict[str, np.ndarray]]
    ) -> tuple[bool, float]:
        """dtype auto's check of the candidate's probe outputs against float32's: every output's
        label (per row or token) the same, and the largest probability change. A task whose
        answer is read from the outputs differently (QA's spans) checks that too."""
        return compare_outputs(reference, candidate)

    def _packer(self) -> PackedEncoder | None:
        """The padding-free runner for this model, unless the settings or the model rule it out."""
        settings = self.settings
        if settings.batching.packed_forward is False:
            return None
        # A compiled forward is what torch_compile asks for; packing would bypass it. OpenVINO runs
        # the model's own padded graph; packing reaches into the torch layers.
        if settings.loading.torch_compile:
            reason = "torch_compile is set"
        elif settings.loading.backend is Backend.OPENVINO:
            reason = "the openvino backend runs the model's padded graph"
        else:
            reason = packing_unsupported(self.model)
        if reason is None:
            packer = PackedEncoder(self.model)
            if (packer.output_fields, packer.token_level) != (self.output_fields, self.token_level_outputs):
                reason = f"its head gives {packer.output_fields}, {self.task.value} reads {self.output_fields}"
            else:
                return packer
        logger.info("padded forward passes only: %s", reason)
        return None

    @abc.abstractmethod
    def encode(self, inputs: Sequence[InputT], params: Sequence[ParamsT]) -> list[EncodeResult]: ...

    @abc.abstractmethod
    def postprocess(
        self, item: InputT, params: ParamsT, encoded: EncodedInput[DetailT], outputs: list[dict[str, np.ndarray]]
    ) -> Any:
        """The typed result for one input from the outputs of its windows (rendered by ``render``)."""

    def run(
        self, requests: Sequence[ParsedRequest[InputT, ParamsT]], sinks: Sequence[StreamSink | None] | None = None
    ) -> BatchResult:
        # (request index, input index within it) for each input of the batch, flattened.
        owners = [(r, k) for r, request in enumerate(requests) for k in range(len(request.inputs))]
        items = [requests[r].inputs[k] for r, k in owners]
        encoded = self.encode(items, [requests[r].params for r, _ in owners])

        windows: list[Window[DetailT]] = []
        window_owner: list[int] = []
        for position, result in enumerate(encoded):
            if isinstance(result, EncodedInput):
                windows.extend(result.windows)
                window_owner.extend([position] * len(result.windows))
        outputs, stats = self.forward(windows)
        outputs_by_input: list[list[dict[str, np.ndarray]]] = [[] for _ in items]
        for position, output in zip(window_owner, outputs):
            outputs_by_input[position].append(output)

        results: list[list[Any]] = [[] for _ in requests]
        errors: dict[int, RequestError] = {}
        truncated = [0] * len(requests)
        windows_read = [0] * len(requests)
        for position, ((owner, index), item, result) in enumerate(zip(owners, items, encoded)):
            if owner in errors:
                continue
            if isinstance(result, RequestError):
                where = f"inputs[{index}]: " if requests[owner].is_list else ""
                errors[owner] = RequestError(where + result.message, result.status, result.reason)
                continue
            truncated[owner] += int(result.truncated)
            windows_read[owner] += len(result.windows) if result.reports_windows else 0
            results[owner].append(self.postprocess(item, requests[owner].params, result, outputs_by_input[position]))

        outcomes = []
        for r, request in enumerate(requests):
            if r in errors:
                outcomes.append(RequestOutcome.failed(errors[r]))
                continue
            outcomes.append(
                RequestOutcome.answered(
                    request,
                    results[r],
                    partial(self.render, params=request.params),
                    truncated_inputs=truncated[r],
                    windows_read=windows_read[r],
                )
            )
        return BatchResult(outcomes, stats)

    def forward(self, windows: Sequence[Window[DetailT]]) -> tuple[list[dict[str, np.ndarray]], ForwardStats]:
        """Model outputs per window, in the order given, from length-sorted passes."""
        stats = ForwardStats()
        lengths = [len(window.input_ids) for window in windows]
        if self.tuner is None:
            return self._forward_with(windows, self.packed is not None, stats), stats
        if self.core_sharing is not None and self.core_sharing.borrowing:
            # A pass on borrowed cores is faster for that reason alone: it runs the choice, untimed.
            way = self.tuner.way
            return self._forward_with(windows, way.packed, stats, self.policy_for(way)), stats
        started = time.perf_counter()
        way = self.tuner.next_batch(sum(lengths))
        results = self._forward_with(windows, way.packed, stats, self.policy_for(way))
        # The way is the whole batch's: its plan of passes as much as the passes themselves.
        switch = self.tuner.record(way, sum(lengths), time.perf_counter() - started)
        if switch is not None:
            self._switch(switch)
        return results, stats

    def _forward_with(
        self,
        windows: Sequence[Window[DetailT]],
        use_packed: bool,
        stats: ForwardStats | None = None,
        policy: ExecutionPolicy | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """Outputs per window from passes planned one way (packed or padded), run under ``policy``
        (default: the runner's)."""
        stats = stats if stats is not None else ForwardStats()
        policy = policy or self.policy
        lengths = [len(window.input_ids) for window in windows]
        results: list[dict[str, np.ndarray]] = [{} for _ in windows]
        if use_packed:
            plan = plan_packed_passes(
                lengths, self.settings.batching.micro_batch_size, self.settings.batching.max_batch_tokens
            )
        else:
            plan = self.plan_padded_passes(lengths)
        for batch in plan:
            batch_lengths = [lengths[i] for i in batch]
            width = max(batch_lengths)
            # Inputs of (nearly) one length have no padding for packing to remove: the model's own pass.
            packed = use_packed and sum(batch_lengths) < PACKING_MIN_FILL * width * len(batch)
            run = self._run_packed if packed else self._run_padded
            for index, output in zip(batch, run([windows[i] for i in batch], batch_lengths, policy)):
                results[index] = output
            stats.add_pass(batch_lengths, padded=not packed)
        return results

    def _switch(self, switch: Switch) -> None:
        logger.info("%s", switch.describe())
        self.packed = self.packer if switch.way.packed else None
        self.policy = self.policy_for(switch.way)

    def _run_padded(
        self, windows: Sequence[Window], lengths: Sequence[int], policy: ExecutionPolicy | None = None
    ) -> list[dict[str, np.ndarray]]:
        feed = self._collate(windows, lengths)
        width = feed["input_ids"].shape[1]
        policy = policy or self.policy
        with policy.forward_context(), last_hidden_states(self.model, self.representations) as hidden:
            output = self.model(**{name: policy.tensor(array) for name, array in feed.items()})
            arrays = {name: policy.to_numpy(output[name]) for name in self.output_fields}
            if hidden:
                mask = policy.tensor(feed["attention_mask"])[..., None].to(torch.float32)
                means = (hidden[0].to(torch.float32) * mask).sum(1) / mask.sum(1)
                arrays["representation"] = policy.to_numpy(means)
        if not self.token_level_outputs:
            return [{name: array[row] for name, array in arrays.items()} for row in range(len(windows))]
        return [
            {name: unpad_row(array[row], length, width, self.padding_side) for name, array in arrays.items()}
            for row, length in enumerate(lengths)
        ]

    def _run_packed(
        self, windows: Sequence[Window], lengths: Sequence[int], policy: ExecutionPolicy | None = None
    ) -> list[dict[str, np.ndarray]]:
        assert self.packer is not None
        with_types = self.feeds_token_types and all(window.token_type_ids is not None for window in windows)
        with (policy or self.policy).forward_context():
            return self.packer.outputs(
                [window.input_ids for window in windows],
                [window.token_type_ids or [] for window in windows] if with_types else None,
                representations=self.representations,
            )

    def _collate(self, windows: Sequence[Window], lengths: Sequence[int]) -> dict[str, np.ndarray]:
        input_ids = pad_rows([w.input_ids for w in windows], self.pad_id, self.padding_side)
        feed = {
            "input_ids": input_ids,
            "attention_mask": attention_mask(lengths, input_ids.shape[1], self.padding_side),
        }
        if self.feeds_token_types and windows[0].token_type_ids is not None:
            feed["token_type_ids"] = pad_rows([w.token_type_ids or [] for w in windows], 0, self.padding_side)
        return feed
