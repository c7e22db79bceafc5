"""Media loading: sampled video frames (video.py) and 16 kHz mono audio (audio.py)."""

# PyAV must be imported before decord: decord loads its bundled FFmpeg libraries process-wide, after which
# PyAV's libvpx (WebM) encoder fails.
import av  # noqa: F401
