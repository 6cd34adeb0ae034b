"""mediasrv.outputs"""
