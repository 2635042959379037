from django.contrib import admin

from training.models import BaseModel, ModelVersion


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ("name", "path", "created_at")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "base_model", "adapter_path", "created_at")
