from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from . import actions, crypto
from .audit import Actor
from .models import ApiToken, AuditEvent, Collection, CollectionVariable, Membership, Org, ProviderKey


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

    def save_model(self, request: HttpRequest, obj: Org, form, change: bool) -> None:
        actions.save_org(obj, fields=form.changed_data, actor=Actor.of(request))

    def delete_model(self, request: HttpRequest, obj: Org) -> None:
        actions.delete_org(obj, actor=Actor.of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Org]) -> None:
        for org in queryset:
            actions.delete_org(org, actor=Actor.of(request))

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        actor = Actor.of(request)
        removed = [f.instance.pk for f in formset.deleted_forms if f.instance.pk is not None]
        # As stored, not as the form's data had it: the row records what was removed.
        for membership in Membership.objects.filter(pk__in=removed).select_related("org", "user"):
            actions.record_membership_removed(membership, actor=actor)
        previous = {f.instance.pk: f.initial.get("role") for f in formset.initial_forms}
        changed = {f.instance.pk: f.changed_data for f in formset.initial_forms if f.has_changed()}
        memberships = formset.save(commit=False)
        for membership in formset.deleted_objects:
            membership.delete()
        for membership in memberships:
            pk = membership.pk
            actions.save_membership(membership, actor=actor, previous_role=previous.get(pk), fields=changed.get(pk, []))
        formset.save_m2m()


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "org", "role", "created"]
    list_filter = ["role", "org"]
    autocomplete_fields = ["user", "org"]

    def save_model(self, request: HttpRequest, obj: Membership, form, change: bool) -> None:
        previous = form.initial.get("role") if change else None
        actions.save_membership(obj, actor=Actor.of(request), previous_role=previous, fields=form.changed_data)

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        actions.remove_membership(obj, actor=Actor.of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset.select_related("org", "user"):
            actions.remove_membership(membership, actor=Actor.of(request))


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

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        if formset.model is not CollectionVariable:
            super().save_formset(request, form, formset, change)
            return
        # Audited by name only: which variables were set or removed, never their values.
        set_names: dict[bool, list[str]] = {True: [], False: []}
        deleted_names: dict[bool, list[str]] = {True: [], False: []}
        for deleted in formset.deleted_forms:
            if deleted.instance.pk is not None:
                deleted_names[bool(deleted.initial.get("secret", True))].append(deleted.initial["name"])
        for variable_form in formset.forms:
            if variable_form in formset.deleted_forms or not variable_form.has_changed():
                continue
            name, secret = variable_form.cleaned_data.get("name"), variable_form.cleaned_data.get("secret", True)
            if name:
                set_names[bool(secret)].append(name)
            before = variable_form.initial.get("name")
            if before and before != name:
                deleted_names[bool(variable_form.initial.get("secret", True))].append(before)
        super().save_formset(request, form, formset, change)
        actions.record_environment_change(
            form.instance, set_names=set_names, deleted_names=deleted_names, actor=Actor.of(request)
        )


@admin.action(description="Revoke selected tokens")
def revoke_tokens(modeladmin, request: HttpRequest, queryset) -> None:
    tokens = queryset.filter(revoked_at__isnull=True).select_related("org", "collection")
    count = actions.revoke_tokens(tokens, actor=Actor.of(request))
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
            actions.save_token(obj, fields=form.changed_data, actor=Actor.of(request))
            return
        token, plain = actions.create_token(
            obj.org,
            name=obj.name,
            collection=obj.collection,
            expires_at=obj.expires_at,
            created_by=request.user,
            actor=Actor.of(request),
        )
        obj.pk, obj.prefix, obj.token_hash = token.pk, token.prefix, token.token_hash
        obj._state.adding = False
        messages.warning(request, f"New token (copy it now, it will not be shown again): {plain}")

    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        actions.delete_token(obj, actor=Actor.of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.select_related("org", "collection"):
            actions.delete_token(token, actor=Actor.of(request))


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

    def save_model(self, request: HttpRequest, obj: ProviderKey, form, change: bool) -> None:
        # ``key`` is named when a new secret was typed: the audit row says the key changed, not to what.
        actions.save_provider_key(obj, fields=form.changed_data, actor=Actor.of(request))

    def delete_model(self, request: HttpRequest, obj: ProviderKey) -> None:
        actions.delete_provider_key(obj, actor=Actor.of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ProviderKey]) -> None:
        for key in queryset.select_related("org"):
            actions.delete_provider_key(key, actor=Actor.of(request))


AUDIT_FIELDS = (
    "created",
    "org",
    "org_name",
    "actor",
    "actor_user",
    "action",
    "target_type",
    "target_id",
    "target_repr",
    "details",
    "ip",
)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit log, read-only: rows are written by the actions they record and never edited."""

    list_display = ["created", "org_name", "actor", "action", "target_type", "target_repr", "ip"]
    list_filter = ["action", "org", "target_type"]
    search_fields = ["actor", "target_repr", "target_id", "org_name"]
    list_select_related = ["org"]
    date_hierarchy = "created"
    fields = readonly_fields = AUDIT_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
