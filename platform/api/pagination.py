"""Page-number pagination with Dify's list envelope: data, has_more, limit, page, total."""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# As Dify's lists; a larger page would also overflow the database's OFFSET (bigint).
MAX_PAGE = 99999


def _positive_int(raw, name: str, default: int, maximum: int | None = None) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationError({name: "Must be a positive integer."}) from None
    if value < 1 or (maximum is not None and value > maximum):
        bound = f" between 1 and {maximum}" if maximum else " of at least 1"
        raise ValidationError({name: f"Must be an integer{bound}."})
    return value


class PageLimitPagination(BasePagination):
    def paginate_queryset(self, queryset, request, view=None):
        self.page = _positive_int(request.query_params.get("page"), "page", 1, MAX_PAGE)
        self.limit = _positive_int(request.query_params.get("limit"), "limit", DEFAULT_LIMIT, MAX_LIMIT)
        self.total = queryset.count()
        start = (self.page - 1) * self.limit
        return list(queryset[start : start + self.limit])

    def get_paginated_response(self, data):
        return Response(
            {
                "data": data,
                "has_more": self.page * self.limit < self.total,
                "limit": self.limit,
                "page": self.page,
                "total": self.total,
            }
        )

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["data", "has_more", "limit", "page", "total"],
            "properties": {
                "data": schema,
                "has_more": {"type": "boolean"},
                "limit": {"type": "integer"},
                "page": {"type": "integer"},
                "total": {"type": "integer"},
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {"name": "page", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
        ]
