"""wanray.datasets"""
