"""Recording: every publication written to disk as it is forwarded, without transcoding.

A server-side subscriber (after Galène's diskwriter): see `recorder.recorder`.
"""

from .recorder import Recorder, RecorderSettings, SegmentInfo, VenueRecording

__all__ = ["Recorder", "RecorderSettings", "SegmentInfo", "VenueRecording"]
