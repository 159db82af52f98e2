"""The Streamlit monitoring dashboard."""
