"""Async jobs: durable video generation jobs, their provider adapters and the background runner."""
