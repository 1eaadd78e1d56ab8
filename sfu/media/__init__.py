"""The media toolkit of server-side subscribers (the recorder, the face recognizer):
RTP packets back in order (`reorder`), whole encoded frames from them (`depacketize`),
and what the codecs' own headers say (`bitstream`). Nothing here decodes, writes files
or knows about faces; both subscribers use it, neither owns it.
"""
