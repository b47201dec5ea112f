"""Speech quality metrics: PESQ, STOI, SI-SNR, SDR, permutation-invariant SI-SNR, DNSMOS (optional),
and scoring of clean/estimate pairs and folders; dance metrics (``dance``, ``dance_features``, ``dance_eval``:
beats and their alignment, AIST++ features and distances, the evaluation beside real dancers and controls).
A leaf layer: of audiokit it imports only audiokit.audio and audiokit.motion."""
from audiokit.metrics.energy import pit_si_snr, sdr, si_snr
from audiokit.metrics.perceptual import pesq_nb, pesq_wb, stoi
from audiokit.metrics.scoring import METRICS, average_scores, match_estimates, score_folders, score_pair
from audiokit.metrics.separation import score_separated_folders, score_separation

__all__ = ["METRICS", "average_scores", "match_estimates", "pesq_nb", "pesq_wb", "pit_si_snr", "score_folders",
           "score_pair", "score_separated_folders", "score_separation", "sdr", "si_snr", "stoi"]
