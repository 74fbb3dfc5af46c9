"""wanray.training"""
