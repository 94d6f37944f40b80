from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone

from . import crypto
from .models import ApiToken, Collection, CollectionVariable, Membership, Org, ProviderKey


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class CollectionInline(admin.TabularInline):
    model = Collection
    extra = 0
    fields = ["name", "description", "created"]
    readonly_fields = ["created"]


@admin.register(Org)
class OrgAdmin(admin.ModelAdmin):
    list_display = ["name", "public_id", "created"]
    search_fields = ["name", "public_id"]
    readonly_fields = ["public_id", "created"]
    inlines = [MembershipInline, CollectionInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "org", "role", "created"]
    list_filter = ["role", "org"]
    autocomplete_fields = ["user", "org"]


class CollectionVariableForm(forms.ModelForm):
    value = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Write-only. Leave empty to keep the current value.",
    )

    class Meta:
        model = CollectionVariable
        fields = ["name", "secret"]

    def clean(self):
        cleaned = super().clean() or {}
        if not self.instance.pk and not cleaned.get("value"):
            self.add_error("value", "A new variable needs its value.")
        return cleaned

    def save(self, commit: bool = True) -> CollectionVariable:
        if self.cleaned_data.get("value"):
            self.instance.value_encrypted = crypto.encrypt(self.cleaned_data["value"])
        return super().save(commit)


class CollectionVariableInline(admin.TabularInline):
    """A collection's environment: values are encrypted and never shown, only replaced."""

    model = CollectionVariable
    form = CollectionVariableForm
    extra = 0
    readonly_fields = ["updated"]


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ["name", "org", "created"]
    list_filter = ["org"]
    search_fields = ["name"]
    inlines = [CollectionVariableInline]


@admin.action(description="Revoke selected tokens")
def revoke_tokens(modeladmin, request: HttpRequest, queryset) -> None:
    count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    modeladmin.message_user(request, f"Revoked {count} token(s).")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created here and shown once; afterwards only their prefix is visible."""

    list_display = ["prefix", "name", "org", "collection", "created", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["org", "revoked_at"]
    search_fields = ["prefix", "name"]
    fields = [
        "org",
        "name",
        "collection",
        "expires_at",
        "revoked_at",
        "prefix",
        "created",
        "last_used_at",
        "created_by",
    ]
    readonly_fields = ["prefix", "created", "last_used_at", "created_by"]
    actions = [revoke_tokens]

    def save_model(self, request: HttpRequest, obj: ApiToken, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, plain = ApiToken.generate(
            org=obj.org,
            name=obj.name,
            collection=obj.collection,
            expires_at=obj.expires_at,
            created_by=request.user,
        )
        obj.pk, obj.prefix, obj.token_hash = token.pk, token.prefix, token.token_hash
        obj._state.adding = False
        messages.warning(request, f"New token (copy it now, it will not be shown again): {plain}")


class ProviderKeyForm(forms.ModelForm):
    key = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Write-only. Leave empty to keep the current key.",
    )

    class Meta:
        model = ProviderKey
        fields = ["org", "provider", "api_base", "model_names"]

    def clean(self):
        cleaned = super().clean() or {}
        if not self.instance.pk and not cleaned.get("key"):
            self.add_error("key", "A new provider key needs its secret.")
        return cleaned

    def save(self, commit: bool = True) -> ProviderKey:
        if self.cleaned_data.get("key"):
            self.instance.set_key(self.cleaned_data["key"])
        return super().save(commit)


@admin.register(ProviderKey)
class ProviderKeyAdmin(admin.ModelAdmin):
    form = ProviderKeyForm
    list_display = ["provider", "org", "api_base", "masked_key", "created"]
    list_filter = ["provider", "org"]

    @admin.display(description="key")
    def masked_key(self, obj: ProviderKey) -> str:
        try:
            return obj.masked
        except ValueError:
            return "(cannot decrypt)"
