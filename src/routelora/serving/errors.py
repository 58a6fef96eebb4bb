"""Errors of a request, with the HTTP status and the OpenAI-style body a client gets for them."""


class RequestError(Exception):
    """A request the server refuses: ``status`` and an OpenAI-style ``error`` object; the server keeps serving."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind or ("server_error" if status >= 500 else "invalid_request_error")

    def body(self) -> dict:
        """``{"error": {"message", "type", "param", "code"}}``, as OpenAI's API answers errors."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> RequestError:
    """A 400 for a request that breaks the chat-completions format or this server's limits."""
    return RequestError(400, message, param=param, code=code)
