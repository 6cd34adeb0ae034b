"""Real-peer fixtures (see peers_plugin.py)."""

from peers_plugin import sipp_dir, speech_wavs, start_phone, start_sipp

__all__ = ["sipp_dir", "speech_wavs", "start_phone", "start_sipp"]
