"""scrub: causal-scrubbing hypothesis testing for transformer circuits."""

from scrub.errors import ScrubError

__all__ = ["ScrubError"]
__version__ = "0.1.0"
