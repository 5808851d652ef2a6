"""Tenants as Dagster partitions: one per organization, keyed by its id as a decimal string."""

import dagster as dg

tenants = dg.DynamicPartitionsDefinition(name="tenants")
