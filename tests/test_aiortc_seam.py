"""The hooks into aiortc's private internals, checked on their own so an upgrade fails here."""

import aiortc
import pytest

from sfu import aiortc_seam
from sfu.aiortc_seam import ForwardingReceiver, ForwardingSender, SeamError, check_seam


def test_seam_matches_installed_aiortc():
    check_seam()


def test_seam_refuses_another_aiortc_version(monkeypatch):
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(SeamError, match=r"1\.17\.0"):
        check_seam()


def test_seam_notices_a_renamed_private_attribute(monkeypatch):
    monkeypatch.setattr(
        aiortc_seam,
        "_RECEIVER_PRIVATE",
        (*aiortc_seam._RECEIVER_PRIVATE, "_RTCRtpReceiver__renamed"),
    )
    with pytest.raises(SeamError, match="renamed"):
        check_seam()


async def test_install_swaps_classes_before_start_only():
    pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("video", direction="sendrecv")
        receiver = ForwardingReceiver.install(transceiver.receiver)
        sender = ForwardingSender.install(transceiver.sender)
        assert isinstance(receiver, aiortc.RTCRtpReceiver)
        assert isinstance(sender, aiortc.RTCRtpSender)
        assert receiver.media_ssrc is None and sender.negotiated is None
        assert not await receiver.request_keyframe()  # nothing received yet: nobody to ask
        sender._RTCRtpSender__started = True
        with pytest.raises(SeamError):
            ForwardingSender.install(sender)
        sender._RTCRtpSender__started = False  # it never really started: let close() pass
    finally:
        await pc.close()
