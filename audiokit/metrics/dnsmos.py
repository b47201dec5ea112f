"""DNSMOS P.835 (Reddy et al., ICASSP 2022): non-intrusive SIG / BAK / OVRL quality scores (about 1..5).

Needs ``onnxruntime`` and the ``sig_bak_ovr.onnx`` model (microsoft/DNS-Challenge; a copy lives in
../shared/data/dnsmos/{DNSMOS,pDNSMOS}). Audio is scored at 16 kHz in 9.01 s windows with a 1 s hop
(shorter clips are repeated to fill one window); raw outputs are mapped to MOS by the published
calibration polynomials, then averaged over windows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from audiokit.audio.resample import resample
from audiokit.errors import CheckpointError, ModelError

RATE = 16000
WINDOW = int(9.01 * RATE)  # samples the model takes at once
MODEL_FILE = "sig_bak_ovr.onnx"
# calibration polynomials (highest power first) of DNS-Challenge's dnsmos_local.py: (SIG, BAK, OVRL)
CALIBRATION = {
    False: ([-0.08397278, 1.22083953, 0.0052439], [-0.13166888, 1.60915514, -0.39604546],
            [-0.06766283, 1.11546468, 0.04602535]),
    True: ([-0.01019296, 0.02751166, 1.19576786, -0.24348726], [-0.04976499, 0.44276479, -0.1644611, 0.96883132],
           [-0.00533021, 0.005101, 1.18058466, -0.11236046]),
}


class Dnsmos:
    """DNSMOS scorer: ``Dnsmos(model_dir)(wav [T], sample_rate) -> {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}``.

    ``model_dir`` holds ``sig_bak_ovr.onnx`` directly or in a ``DNSMOS/`` (``pDNSMOS/`` when
    ``personalized``) subfolder; a folder named pDNSMOS implies ``personalized`` (interfering talkers
    penalised). Raises ModelError without onnxruntime, CheckpointError without the model file.
    """

    def __init__(self, model_dir: str | Path, personalized: bool | None = None):
        model_dir = Path(model_dir)
        if personalized is None:
            personalized = model_dir.name == "pDNSMOS"
        sub = "pDNSMOS" if personalized else "DNSMOS"
        candidates = [model_dir / MODEL_FILE, model_dir / sub / MODEL_FILE]
        model = next((p for p in candidates if p.is_file()), None)
        if model is None:
            raise CheckpointError(model_dir, f"no DNSMOS model ({MODEL_FILE} or {sub}/{MODEL_FILE})")
        try:
            import onnxruntime
        except ImportError as exc:
            raise ModelError("DNSMOS needs onnxruntime: pip install onnxruntime") from exc
        self.session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.calibration = [np.poly1d(c) for c in CALIBRATION[personalized]]

    def __call__(self, wav, sample_rate: int) -> dict[str, float]:
        """Scores of a mono signal [T] at ``sample_rate`` Hz."""
        audio = np.asarray(resample(np.asarray(wav, dtype=np.float32), sample_rate, RATE), dtype=np.float32)
        while audio.size < WINDOW:
            audio = np.concatenate([audio, audio])
        scores = []
        for start in range(0, audio.size - WINDOW + 1, RATE):
            raw = self.session.run(None, {self.input_name: audio[None, start:start + WINDOW]})[0][0]
            scores.append([poly(value) for poly, value in zip(self.calibration, raw)])
        sig, bak, ovrl = np.mean(scores, axis=0)
        return {"dnsmos_sig": float(sig), "dnsmos_bak": float(bak), "dnsmos_ovrl": float(ovrl)}
