"""mediasrv.sip"""
