from __future__ import annotations

from rest_framework import serializers

from .models import ErrorKind, Event, Run


class RunSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    org = serializers.CharField(source="org.public_id", read_only=True)
    collection = serializers.SerializerMethodField()
    duration_s = serializers.FloatField(read_only=True, allow_null=True)
    cost_usd = serializers.FloatField(read_only=True)
    events_url = serializers.SerializerMethodField()
    error_kind = serializers.ChoiceField(choices=ErrorKind.choices, allow_blank=True, read_only=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "org",
            "collection",
            "task",
            "kind",
            "status",
            "model",
            "upstream_model",
            "provider",
            "agent",
            "error_kind",
            "error",
            "error_code",
            "contract",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cost_usd",
            "created",
            "started_at",
            "finished_at",
            "duration_s",
            "token_prefix",
            "metadata",
            "last_seq",
            "events_dropped",
            "events_url",
        ]
        read_only_fields = fields

    def get_collection(self, run: Run) -> str | None:
        return run.collection.name if run.collection is not None else None

    def get_events_url(self, run: Run) -> str:
        return f"/api/v1/runs/{run.public_id}/events"


class EventSerializer(serializers.ModelSerializer):
    cost_usd = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Event
        fields = [
            "seq",
            "kind",
            "span",
            "ts",
            "payload",
            "model",
            "provider",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "latency_ms",
        ]
        read_only_fields = fields


class RunPageSerializer(serializers.Serializer):
    """A page of runs, as cursor pagination gives it."""

    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = RunSerializer(many=True)


class EventPageSerializer(serializers.Serializer):
    data = EventSerializer(many=True)  # type: ignore[assignment]
    has_more = serializers.BooleanField()
    next_after = serializers.IntegerField()
