"""Rubrics, datasets and experiments. Verdicts and human scores are ``trajectories.Label`` rows."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from orgs.models import Org, public_code
from runs.models import Task
from trajectories.models import Event, Run


class RubricQuerySet(models.QuerySet["Rubric"]):
    def for_org(self, org: Org) -> RubricQuerySet:
        return self.filter(org=org)


class Rubric(models.Model):
    """Criteria scored 1-5 (each with anchors and a weight) and the rule that turns scores into pass or fail:
    the weighted average at least ``pass_threshold``, no criterion below ``floor``, and each hard floor met."""

    public_id = models.CharField(max_length=32, unique=True)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="rubrics")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    criteria = models.JSONField(help_text="[{name, description, weight, anchors: {'1': …, '5': …}}]")
    pass_threshold = models.FloatField(default=4.0)
    floor = models.PositiveSmallIntegerField(default=3, help_text="No criterion may score below this")
    hard_floors = models.JSONField(default=dict, blank=True, help_text="{criterion: minimum score}")
    tasks = models.ManyToManyField(Task, blank=True, related_name="rubrics")
    created = models.DateTimeField(auto_now_add=True)

    objects = RubricQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="rubric_name_per_org")]

    def __str__(self) -> str:
        return self.name

    def verdict(self, scores: dict[str, int]) -> tuple[float, bool, list[str]]:
        """(weighted average, passed, the reasons it failed) for a score per criterion."""
        weights = {c["name"]: float(c.get("weight", 1.0)) for c in self.criteria}
        total = sum(weights.values())
        grade = sum(scores[name] * weight for name, weight in weights.items()) / total
        reasons = []
        if grade < self.pass_threshold:
            reasons.append(f"average {grade:.2f} is below {self.pass_threshold}")
        reasons += [f"{n} scored {s}, below the floor of {self.floor}" for n, s in scores.items() if s < self.floor]
        reasons += [
            f"{n} scored {scores[n]}, below its hard floor of {minimum}"
            for n, minimum in self.hard_floors.items()
            if n in scores and scores[n] < minimum
        ]
        return round(grade, 4), not reasons, reasons


class Dataset(models.Model):
    public_id = models.CharField(max_length=32, unique=True)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="dataset_name_per_org")]

    def __str__(self) -> str:
        return self.name


class DatasetItem(models.Model):
    """One input of a dataset: the task's init_params, uploaded files, and what a right answer holds."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    key = models.CharField(max_length=100)
    inputs = models.JSONField(default=dict, blank=True)
    file_paths = models.JSONField(default=list, blank=True)
    expected = models.JSONField(null=True, blank=True, help_text="Checked against the run's answer or outputs")

    class Meta:
        ordering = ["dataset", "id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "key"], name="item_key_per_dataset")]

    def __str__(self) -> str:
        return f"{self.dataset}:{self.key}"


class ExperimentStatus(models.TextChoices):
    RUNNING = "running"
    SCORING = "scoring"
    DONE = "done"
    FAILED = "failed"


class Experiment(models.Model):
    """One task over a dataset x models x repeats; each run scored by the rubric judge (or the expected output
    and the validation report when there is no rubric)."""

    public_id = models.CharField(max_length=32, unique=True)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="experiments")
    name = models.CharField(max_length=200, blank=True)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="experiments")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="experiments")
    model_names = models.JSONField(help_text="The models under test")
    repeats = models.PositiveSmallIntegerField(default=1)
    rubric = models.ForeignKey(Rubric, null=True, blank=True, on_delete=models.SET_NULL)
    judge_model = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=ExperimentStatus.choices, default=ExperimentStatus.RUNNING)
    error = models.TextField(blank=True)
    token_prefix = models.CharField(max_length=16, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)
    polled_at = models.DateTimeField(null=True, blank=True, help_text="When a worker last advanced it")
    lease_until = models.DateTimeField(
        null=True, blank=True, help_text="A worker advancing the experiment holds it until then (one at a time)"
    )

    def __str__(self) -> str:
        return self.name or self.public_id


class Trial(models.Model):
    """One run of an experiment: an item, a model, a repeat, and once scored, its score and pass."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="trials")
    item = models.ForeignKey(DatasetItem, on_delete=models.CASCADE, related_name="trials")
    model = models.CharField(max_length=200)
    repeat = models.PositiveSmallIntegerField()
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="trials")
    score = models.FloatField(null=True, blank=True)
    passed = models.BooleanField(null=True)
    scored = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["experiment", "item", "model", "repeat"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "item", "model", "repeat"], name="one_trial_per_cell")
        ]

    def __str__(self) -> str:
        return f"{self.experiment} {self.item.key} {self.model} #{self.repeat}"


class HillClimb(models.Model):
    """Improve a runbook task against its judge: run the candidate, judge it, have a model revise the best version
    so far, and again, until the cap on rounds or ``patience`` rounds without improvement. Every round is kept."""

    public_id = models.CharField(max_length=32, unique=True)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="hill_climbs")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="hill_climbs")
    rubric = models.ForeignKey(Rubric, on_delete=models.PROTECT)
    judge_model = models.CharField(max_length=200)
    reviser_model = models.CharField(max_length=200)
    model = models.CharField(max_length=200, blank=True, help_text="The model the runs use (default: the task's)")
    init_params = models.JSONField(default=dict, blank=True)
    max_rounds = models.PositiveSmallIntegerField(default=5)
    patience = models.PositiveSmallIntegerField(default=2)
    status = models.CharField(max_length=10, choices=ExperimentStatus.choices, default=ExperimentStatus.RUNNING)
    candidate_version = models.PositiveIntegerField()
    current_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    best_version = models.PositiveIntegerField(null=True, blank=True)
    best_grade = models.FloatField(null=True, blank=True)
    rounds = models.JSONField(default=list, blank=True)
    token_prefix = models.CharField(max_length=16, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.public_id


def new_queue_id() -> str:
    return public_code("lq")


class LabelQueueQuerySet(models.QuerySet["LabelQueue"]):
    def for_org(self, org: Org) -> LabelQueueQuerySet:
        return self.filter(org=org)


class LabelQueue(models.Model):
    """Runs (or events of runs) for people to score with a rubric, each by ``reviewers_per_item`` reviewers. The
    scores are ``trajectories.Label`` rows (``score.<criterion>``, ``eval.grade``, ``eval.pass``) held by each
    reviewer, so the queue only says what to look at and who is done."""

    public_id = models.CharField(max_length=32, unique=True, default=new_queue_id, editable=False)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="label_queues")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    rubric = models.ForeignKey(Rubric, on_delete=models.PROTECT, related_name="queues")
    reviewers_per_item = models.PositiveSmallIntegerField(default=2)
    event_kind = models.CharField(max_length=20, blank=True, help_text="Items are this kind of event, not runs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)

    objects = LabelQueueQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.name


class LabelQueueItem(models.Model):
    """One thing to score: a run, or one event of it. ``position`` counts from 1 and is the item's address."""

    queue = models.ForeignKey(LabelQueue, on_delete=models.CASCADE, related_name="items")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["queue", "position"]
        constraints = [models.UniqueConstraint(fields=["queue", "position"], name="one_item_per_position")]

    def __str__(self) -> str:
        return f"{self.queue} #{self.position}"
