from django.db import migrations, models


def forwards(apps, schema_editor):
    GenerationJob = apps.get_model("training", "GenerationJob")
    GenerationJob.objects.filter(skip_truncated=True).update(cut_off="left_out")
    GenerationJob.objects.filter(skip_truncated=False).update(cut_off="paired")


def backwards(apps, schema_editor):
    GenerationJob = apps.get_model("training", "GenerationJob")
    GenerationJob.objects.filter(cut_off="paired").update(skip_truncated=False)
    GenerationJob.objects.exclude(cut_off="paired").update(skip_truncated=True)


class Migration(migrations.Migration):
    dependencies = [("training", "0013_version_exports")]

    operations = [
        migrations.AddField(
            model_name="generationjob",
            name="cut_off",
            field=models.CharField(
                default="against_finished",
                help_text="Candidate jobs: how answers cut off at the token limit are paired "
                "(see training.trainer.candidates.CUT_OFF_CHOICES).",
                max_length=24,
            ),
        ),
        migrations.RunPython(forwards, backwards),
        migrations.RemoveField(model_name="generationjob", name="skip_truncated"),
    ]
