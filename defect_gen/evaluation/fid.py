"""
FID and KID with a feature extractor the user supplies (no weights can be downloaded here).

The extractor file is either TorchScript (`torch.jit.save` of a scripted or traced module;
StyleGAN2-ADA's `inception-2015-12-05.pt` is one) or a state_dict of
`defect_gen.evaluation.inception.FIDInceptionV3` (pytorch-fid's `pt_inception-2015-12-05-*.pth`).
Images are resized to `size` x `size` (bilinear), scaled to `input_range` and fed as a float
[N x 3 x S x S] batch; the output is flattened to [N x D]. A module whose forward takes
`return_features` (StyleGAN's Inception) is called with `return_features=True`. Input ranges are
named: `byte` [0, 255], `unit` [0, 1], `signed` [-1, 1]. Unless given, the range is `signed` for
FIDInceptionV3, `byte` for a module taking `return_features` (StyleGAN's convention) and `unit` for
any other module.

FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)); the trace term is computed as
tr((S1^(1/2) S2 S1^(1/2))^(1/2)), the square root of a symmetric positive semi-definite matrix, by
eigendecomposition in float64 with negative round-off eigenvalues clipped to 0. KID is the unbiased
MMD^2 with the kernel k(x, y) = (x . y / D + 1)^3, averaged over random subsets.
"""

import logging
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import EvaluationError

logger = logging.getLogger(__name__)

# Names (not "-1,1") so that command lines need no "=" before a leading minus sign.
INPUT_RANGES = {"byte": (0.0, 255.0), "unit": (0.0, 1.0), "signed": (-1.0, 1.0)}


def sqrtm_psd(matrix):
    """Give the symmetric square root of a symmetric positive semi-definite [D x D] matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1, sigma2):
    """Give tr((sigma1 sigma2)^(1/2)) of symmetric PSD [D x D] matrices, via a symmetric product."""
    root = sqrtm_psd(sigma1)
    inner = root @ np.asarray(sigma2, dtype=np.float64) @ root
    w = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Give the Fréchet distance of two Gaussians (means [D], covariances [D x D])."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    diff = mu1 - mu2
    value = (
        diff @ diff
        + np.trace(np.asarray(sigma1, np.float64))
        + np.trace(np.asarray(sigma2, np.float64))
        - 2 * trace_sqrt_product(sigma1, sigma2)
    )
    return float(max(value, 0.0))


def feature_statistics(feats):
    """Give (mean [D], covariance [D x D], ddof = 1) of [N x D] features, N >= 2."""
    feats = np.asarray(feats, np.float64)
    if len(feats) < 2:
        raise ValueError("FID needs at least 2 images per set")
    return feats.mean(0), np.cov(feats, rowvar=False).reshape(feats.shape[1], feats.shape[1])


def fid_from_features(feats1, feats2):
    """Give the FID between two [N x D] feature sets."""
    return frechet_distance(*feature_statistics(feats1), *feature_statistics(feats2))


def _polynomial_kernel(x, y):
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x, y):
    """Give the unbiased MMD^2 between [m x D] and [n x D] features under the KID kernel."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def kid_from_features(feats1, feats2, *, num_subsets=100, subset_size=1000, seed=0):
    """
    Give (mean, std) of the unbiased MMD^2 over `num_subsets` random subsets of both sets.

    The subset size is min(subset_size, N1, N2); with both sets at that size a single exact value is
    returned (std 0).
    """
    x, y = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise ValueError("KID needs at least 2 images per set")
    if size == len(x) == len(y):
        return mmd2_unbiased(x, y), 0.0
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(
            x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)]
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def _unwrap_state_dict(obj):
    for key in ("state_dict", "model", "ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return obj


def load_feature_extractor(path, device="cpu"):
    """Give the eval-mode feature network at `path` (TorchScript or FIDInceptionV3 state_dict)."""
    try:
        with warnings.catch_warnings():
            # torch >= 2.9 marks TorchScript deprecated; it is still the format extractors ship in.
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(path, map_location=device)
        return model.eval()
    except FileNotFoundError:
        raise EvaluationError(f"{path}: file not found (--inception_weights)") from None
    except (RuntimeError, ValueError):
        pass
    try:
        state = _unwrap_state_dict(torch.load(path, map_location=device, weights_only=True))
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
        raise EvaluationError(
            f"{path}: neither TorchScript nor a state_dict ({type(e).__name__})"
        ) from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise EvaluationError(f"{path}: not a TorchScript module or a state_dict of tensors")
    from .inception import FIDInceptionV3

    model = FIDInceptionV3()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise EvaluationError(
            f"{path}: state_dict does not fit FIDInceptionV3 ({first[:200]}); "
            "save other networks with torch.jit.script or torch.jit.trace"
        ) from None
    return model.to(device).eval()


def _wants_return_features(model):
    try:
        names = [a.name for a in model.forward.schema.arguments]
    except AttributeError:
        import inspect

        try:
            names = list(inspect.signature(model.forward).parameters)
        except (TypeError, ValueError):
            return False
    return "return_features" in names


def default_input_range(model):
    """Give the INPUT_RANGES key a feature network expects when the user names none."""
    from .inception import FIDInceptionV3

    if isinstance(model, FIDInceptionV3):
        return FIDInceptionV3.input_range
    return "byte" if _wants_return_features(model) else "unit"


@torch.no_grad()
def extract_features(model, images, *, size=299, input_range=None, batch_size=32, device="cpu"):
    """
    Give float64 [N x D] features of uint8 [N x H x W x 3] images.

    :param input_range: a key of INPUT_RANGES, the value range the network expects (None: guess, see
        the module docstring).
    """
    lo, hi = INPUT_RANGES[input_range or default_input_range(model)]
    kwargs = {"return_features": True} if _wants_return_features(model) else {}
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size]))
        x = x.permute(0, 3, 1, 2).float().to(device) / 255.0
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        y = model(x * (hi - lo) + lo, **kwargs)
        if isinstance(y, (tuple, list)):
            y = y[0]
        out.append(y.reshape(len(x), -1).double().cpu().numpy())
    return np.concatenate(out)


def fid_kid(model, generated, references, *, size=299, input_range=None, device="cpu"):
    """
    Give FID and KID of the generated images against each named reference set.

    With two or more reference sets, the first two are also compared with each other: that value
    (`reference_floor`) is what FID / KID read between two real sets of these sizes, the scale
    against which the generated set's numbers are to be judged when sets are this small.

    :param generated: uint8 [N x H x W x 3]; :param references: dict name -> uint8 images.
    :return: {name: {"fid", "kid", "kid_std", "num_reference"}, "reference_floor": {...} or None,
        "feature_dim", "num_generated"}.
    """

    def feats(images):
        return extract_features(model, images, size=size, input_range=input_range, device=device)

    def compare(a, b):
        kid, kid_std = kid_from_features(a, b)
        return {"fid": fid_from_features(a, b), "kid": kid, "kid_std": kid_std}

    gen = feats(generated)
    result = {
        "feature_dim": int(gen.shape[1]),
        "num_generated": int(len(gen)),
        "input_range": input_range or default_input_range(model),
        "input_size": size,
    }
    ref_feats = {name: feats(images) for name, images in references.items()}
    for name, ref in ref_feats.items():
        result[name] = dict(compare(gen, ref), num_reference=int(len(ref)))
    names = list(ref_feats)
    result["reference_floor"] = (
        dict(compare(ref_feats[names[0]], ref_feats[names[1]]), between=names[:2])
        if len(names) >= 2
        else None
    )
    return result
