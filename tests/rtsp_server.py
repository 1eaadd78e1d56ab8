"""A real RTSP server for the duty camera tests: GStreamer's (Debian's
gir1.2-gst-rtsp-server-1.0 and python3-gi, run with Debian's python3, not the venv's).

    /usr/bin/python3 tests/rtsp_server.py PORT FILE.mp4 [USER PASSWORD]

serves FILE's H.264 at rtsp://127.0.0.1:PORT/duty, in real time, from its start for each
client, over TCP or UDP; with USER and PASSWORD it asks for them (Basic). Prints "ready"
once it listens."""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port, path = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # no parser, no encoder: the file's H.264 as it is (qtdemux gives AVC access units)
    factory.set_launch(
        f"( filesrc location={path} ! qtdemux ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(False)
    if len(sys.argv) == 5:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "camera-user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(sys.argv[3], sys.argv[4]), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role("camera-user")
        permissions.add_permission_for_role(
            "camera-user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True
        )
        permissions.add_permission_for_role(
            "camera-user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True
        )
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/duty", factory)
    if server.attach(None) == 0:
        print("could not listen", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
