"""speakerops.registry"""
