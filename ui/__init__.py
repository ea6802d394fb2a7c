"""Dashboard helpers shared by the pages (the only package that imports streamlit: entry script app.py, pages in views/)."""
