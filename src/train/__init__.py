"""speakerops.train"""
