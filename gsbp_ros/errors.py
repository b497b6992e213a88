"""Exceptions with messages meant for people (CLI lines, service responses)."""


class GsbpError(Exception):
    """Base class: the message is a complete, one-line explanation."""


class SceneError(GsbpError):
    """A scene file is missing, malformed or holds invalid values."""


class CameraError(GsbpError):
    """A camera file is missing or malformed."""


class FeatureError(GsbpError):
    """A feature map, feature model or label map is missing or inconsistent."""


class QueryError(GsbpError):
    """A query (prompt, point, mask, label) is invalid for this field."""
