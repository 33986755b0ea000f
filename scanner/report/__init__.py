"""Prevalence reports for policy researchers (``meshscan report``, ``meshscan survey``)."""
