"""speakerops.data"""
