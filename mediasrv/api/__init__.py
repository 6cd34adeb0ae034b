"""mediasrv.api"""
