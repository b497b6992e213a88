"""Errors of the ROS layer."""

from gsbp_ros.errors import QueryError


class MessageError(QueryError):
    """A request message is malformed (encoding, size, step, frame, ...): the node answers
    ``success=false`` with the message."""
