"""Serializer pieces shared by the APIs."""

from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer):
    """Refuses fields it does not know: a misspelt field must not be silently ignored."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name[:100]: "Unknown field." for name in unknown[:20]}
                )
        return super().to_internal_value(data)


class JsonAlwaysNegotiation:
    """The Service API answers JSON (or SSE, built by the view) whatever Accept says, like
    Dify: SSE clients send `Accept: text/event-stream` and must not get a 406."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
