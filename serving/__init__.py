"""wanray.serving"""
