"""Kafka: producing, consuming, dead letters and their replay."""
