"""wanray.raycluster"""
