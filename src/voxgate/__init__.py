"""voxgate: a real-time voice gateway for conversational apps, in front of the Voxtral TTS API."""

__version__ = "0.1.0"
