"""mediasrv.media"""
