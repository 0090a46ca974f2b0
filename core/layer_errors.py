"""Where the quantization error comes from: each layer's output in a quantized variant against the
same layer's output in float32, over a sample of test images.

Both models run with every intermediate tensor preserved (no delegate), and their compute ops are
paired by output name where the quantized model kept it, else in execution order by type (the k-th
CONV_2D with the k-th CONV_2D …); the converter's
bookkeeping ops (QUANTIZE, DEQUANTIZE, shape arithmetic) are skipped. Quantized outputs are
dequantized with their scale and zero point before comparing. This works for every variant, the
LiteRT Quantizer's and quantization-aware training's included, without TensorFlow.

RMSE is in the layer's own units; SNR = 10·log10(Σ float² / Σ (float − quantized)²) in dB (higher
is better; each 6 dB is about one more bit of precision; None where the outputs are identical).
For ``qat_int8`` the difference also holds what fine-tuning changed, not only the rounding.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, replace

import numpy as np

from core.runtime import LiteModel

BOOKKEEPING = {"QUANTIZE", "DEQUANTIZE", "SHAPE", "STRIDED_SLICE", "PACK", "CAST", "DELEGATE"}


@dataclass(frozen=True)
class LayerError:
    tensor: str  # the layer's output tensor, as named in the float32 model
    op: str
    rmse: float
    snr_db: float | None  # None when the outputs are identical (no error at all)
    float_range: float  # max − min of the float activations, for scale
    # The LiteRT Quantizer's own validation of the same tensor (its recipes only), as a cross-check.
    validator_snr_db: float | None = None

    @property
    def broken(self) -> bool:
        """The quantized layer's output is not finite (NaN or inf): a kernel failed, not the rounding."""
        return not np.isfinite(self.rmse)

    def to_dict(self) -> dict:
        data = {key: (round(value, 6) if isinstance(value, float) else value) for key, value in asdict(self).items()}
        if data["validator_snr_db"] is None:
            del data["validator_snr_db"]
        if self.broken:  # JSON has no NaN: say it in words
            data.update(rmse=None, snr_db=None, output_not_finite=True)
        return data


def _compute_outputs(model: LiteModel, images: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    model.set_input(images)
    model.invoke()
    details = {d["index"]: d for d in model.tensor_details()}
    outputs = []
    for op in model.ops():
        if op["op_name"] in BOOKKEEPING or len(op["outputs"]) == 0:
            continue
        index = op["outputs"][0]
        detail = details[index]
        values = model.tensor(index)
        if np.dtype(detail["dtype"]).kind == "i" and detail["quantization"][0] == 0:
            continue  # integer shape arithmetic, not an activation
        scale, zero_point = detail["quantization"]
        values = (values.astype(np.float32) - zero_point) * scale if scale else values.astype(np.float32)
        outputs.append((op["op_name"], detail["name"], values))
    return outputs


def layer_errors(float_tflite: bytes, quantized_tflite: bytes, images: np.ndarray) -> list[LayerError]:
    """Per-layer RMSE and SNR of a quantized variant against float32 on ``images``."""
    models = LiteModel(float_tflite, preserve_all_tensors=True), LiteModel(quantized_tflite, preserve_all_tensors=True)
    images = images[: min(model.max_batch for model in models)]  # one batch, within both interpreters' memory bound
    reference, quantized = (_compute_outputs(model, images) for model in models)
    by_type: dict[str, list] = defaultdict(list)
    by_name = {(op, name): values for op, name, values in quantized}
    for op, name, values in quantized:
        by_type[op].append((name, values))
    taken: dict[str, int] = defaultdict(int)
    errors = []
    for op, name, float_values in reference:
        if (op, name) in by_name:  # the same op's output under the same name (the LiteRT Quantizer keeps names,
            values = by_name[op, name]  # and its Hadamard recipes add FULLY_CONNECTED ops of their own)
        else:
            candidates = by_type.get(op, [])
            if taken[op] >= len(candidates):
                continue
            _, values = candidates[taken[op]]
            taken[op] += 1
        if values.shape != float_values.shape:
            continue
        difference = float_values - values
        if not np.all(np.isfinite(values)):
            errors.append(LayerError(name, op, float("nan"), float("nan"), float(float_values.max() - float_values.min())))
            continue
        noise = float(np.sum(difference.astype(np.float64) ** 2))
        signal = float(np.sum(float_values.astype(np.float64) ** 2))
        snr = None if noise == 0 else float(10 * np.log10(max(signal, 1e-30) / noise))
        errors.append(
            LayerError(name, op, float(np.sqrt(np.mean(difference**2))), snr, float(float_values.max() - float_values.min()))
        )
    return errors


def litert_quantizer_snr_db(
    float_tflite: bytes, quantized_tflite: bytes, recipe_name: str, images: np.ndarray
) -> dict[str, float]:
    """The LiteRT Quantizer's own per-tensor validation (SNR, converted to dB), where it applies:
    to a model that one of its recipes produced. Keyed by tensor name."""
    import contextlib
    import io
    import warnings

    from litert_quantizer import quantizer, recipe
    from litert_quantizer.utils import validation_utils

    key, name = LiteModel(float_tflite).signature_input()
    job = quantizer.Quantizer(
        bytearray(float_tflite), getattr(recipe, recipe_name)(), previous_quantized_model=bytearray(quantized_tflite)
    )
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = job.validate(
            test_data={key: [{name: image[None].astype(np.float32)} for image in images]},
            error_metrics=[validation_utils.ValidationErrorMetric.SNR],
            use_xnnpack=False,
            num_threads=1,
        )
    if isinstance(result, dict):
        result = next(iter(result.values()))
    return {
        tensor: float(10 * np.log10(values["snr"]))
        for tensor, values in result.get_all_tensor_results().items()
        if values.get("snr", 0) > 0
    }


def with_validator(errors: list[LayerError], validator: dict[str, float]) -> list[LayerError]:
    return [replace(error, validator_snr_db=validator.get(error.tensor)) for error in errors]
