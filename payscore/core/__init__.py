"""The pure scoring core: no Kafka, database, Streamlit or Typer imports."""
