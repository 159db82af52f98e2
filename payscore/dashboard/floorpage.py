"""The browser benchmark's floor: a Streamlit page of one title and one line, no database.

Its first load, timed in the same browser and run as the dashboard's, is what Streamlit alone
takes on the machine (its scripts and styles, the session's WebSocket, one script run), so the
dashboard's own share of a first load is the difference. Streamlit runs this file as
``__main__``; imported, it draws nothing (the benchmark reads ``TITLE``)."""

import streamlit as st

TITLE = "payscore - browser floor"
LINE = "One title and one line: what Streamlit alone takes to draw."


def main() -> None:
    st.set_page_config(page_title="payscore floor", layout="wide")
    st.title(TITLE)
    st.write(LINE)


if __name__ == "__main__":
    main()
