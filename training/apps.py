from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Labeling is the lower layer and imports nothing of training: what its queue and pages need from here is
        # handed to it (labeling/extensions.py).
        from labeling.extensions import EXTENSIONS
        from training import extensions

        EXTENSIONS.pair_order = extensions.pair_order
        EXTENSIONS.dashboard_context = extensions.dashboard_context
        EXTENSIONS.home_walkthrough = extensions.home_walkthrough
        EXTENSIONS.demo_base_version = extensions.demo_base_version
