"""mediasrv.demo"""
