"""A task class of the user's own, beside the study file that names it (``task:
ticket_task:Tickets``): text classification of support tickets whose search optimises
macro-F1 (the queues are not equally common) instead of accuracy."""

from trainables.tasks.text_classification import TextClassification


class Tickets(TextClassification):
    metric_names = ("macro_f1", "accuracy")
