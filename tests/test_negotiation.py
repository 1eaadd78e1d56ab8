from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from sfu.negotiation import limit_video_bitrate

from media import PictureTrack, face_picture


async def test_bitrate_cap_lands_in_the_video_section_and_browsers_parse_it():
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        offerer.addTransceiver(AudioStreamTrack(), direction="sendonly")
        offerer.addTransceiver(PictureTrack(face_picture(64, 36)), direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        capped = limit_video_bitrate(answerer.localDescription.sdp, 800)
        audio, video = capped.split("m=audio")[1].split("m=video")
        assert "b=AS:800" in video and "b=AS" not in audio
        assert limit_video_bitrate(capped, 500).count("b=AS:") == 1  # replaced, not added
        await offerer.setRemoteDescription(RTCSessionDescription(capped, "answer"))
    finally:
        await offerer.close()
        await answerer.close()
