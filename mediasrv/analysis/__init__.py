"""mediasrv.analysis"""
