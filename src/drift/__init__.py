"""speakerops.drift"""
