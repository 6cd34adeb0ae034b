"""mediasrv.calls"""
