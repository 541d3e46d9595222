"""speakerops.eval"""
