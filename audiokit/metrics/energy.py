"""Energy-ratio metrics in dB: SI-SNR, plain SDR and permutation-invariant SI-SNR.

Signals are tensors or arrays [..., T] (time last, any sample rate); results are tensors [...] in dB.
"""
from __future__ import annotations

import numpy as np
import torch

EPS = 1e-8


def _as_tensor(x) -> torch.Tensor:
    """Float64 tensor view of an array or tensor (float64 keeps inf-ish ratios of identical signals finite)."""
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(torch.float64)


def si_snr(reference, estimate) -> torch.Tensor:
    """Scale-invariant SNR (dB) of ``estimate`` against ``reference``, both [..., T]; result [...].

    Both are made zero-mean, the estimate is projected on the reference, and the dB ratio of projection
    to residual energy is returned (speechbrain's ``cal_si_snr``). Identical signals give > 100 dB.
    """
    from speechbrain.nnet.losses import cal_si_snr

    ref, est = (x.contiguous() for x in torch.broadcast_tensors(_as_tensor(reference), _as_tensor(estimate)))
    batch = ref.shape[:-1]
    as_tbc = lambda x: x.reshape(-1, x.shape[-1]).T.unsqueeze(-1)  # noqa: E731  [T, N, 1] for speechbrain
    return -cal_si_snr(as_tbc(ref), as_tbc(est)).reshape(batch)


def sdr(reference, estimate) -> torch.Tensor:
    """Plain signal-to-distortion ratio (dB) of ``estimate`` against ``reference``, both [..., T]; result [...].

    ``10 log10(|s|^2 / |s - s_hat|^2)``: no projection, no mean removal, no distortion filter (unlike
    BSS Eval's SDR), so gain errors and offsets count as distortion. Identical signals give > 100 dB.
    """
    ref, est = _as_tensor(reference), _as_tensor(estimate)
    signal = ref.pow(2).sum(-1)
    distortion = (ref - est).pow(2).sum(-1)
    return 10 * torch.log10((signal + EPS) / (distortion + EPS))


def pit_si_snr(references, estimates) -> tuple[float, tuple[int, ...]]:
    """Best mean SI-SNR (dB) over the permutations of separated sources, both [S, T].

    Returns (mean SI-SNR, perm) where ``estimates[list(perm)]`` lines up with ``references``
    (speechbrain's ``PitWrapper`` picks the permutation).
    """
    from speechbrain.nnet.losses import PitWrapper, cal_si_snr

    refs, ests = _as_tensor(references), _as_tensor(estimates)
    if refs.ndim != 2 or refs.shape != ests.shape:
        raise ValueError(f"want references and estimates [S, T] of one shape, got {tuple(refs.shape)}, "
                         f"{tuple(ests.shape)}")
    loss, perms = PitWrapper(cal_si_snr)(ests.T.unsqueeze(0), refs.T.unsqueeze(0))
    return -float(loss[0]), tuple(int(i) for i in perms[0])
