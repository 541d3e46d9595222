"""speakerops.models"""
