# Hash and string churn; prints a checksum.
use strict;
use warnings;
my $sum = 0;
for my $round (1 .. 20) {
  my %h;
  for my $i (1 .. 20000) { $h{"key$i-$round"} = "v" x ($i % 97) . $i; }
  my @k = sort keys %h;
  $sum += length(join(",", @k[0 .. 99]));
  $sum += length($h{$k[-1]});
}
print "$sum\n";
